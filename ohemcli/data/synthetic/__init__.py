"""The built-in synthetic data set (``--data synth``): the shapes and textures it draws
(``shapes``) and the VOC-layout set generated from them (``generate``)."""

from ohemcli.data.synthetic.generate import generate_synthetic

__all__ = ["generate_synthetic"]
