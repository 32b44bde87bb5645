"""ohemcli: does Online Hard Example Mining beat the older ways of choosing training RoIs?"""

__version__ = "0.1.0"
