"""``python -m ohemcli`` (and ``torchrun -m ohemcli train ...``) runs the ``ohem`` CLI."""

from ohemcli.cli import main

if __name__ == "__main__":
    main()
