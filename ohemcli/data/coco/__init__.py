"""COCO-format data: the folder layouts (``layout``), the json reader and its checks
(``json_file``), and one split as a :class:`~ohemcli.data.dataset.Dataset` (``dataset``)."""

from ohemcli.data.coco.dataset import COCODataset

__all__ = ["COCODataset"]  # the subpackage's face: ``from ohemcli.data.coco import COCODataset``
