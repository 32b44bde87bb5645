"""The typer application object and its error handling, shared by every command module."""

from __future__ import annotations

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer 0.29 vendors click
from typer.core import TyperGroup

from ohemcli.errors import UserError, quote
from ohemcli.progress import err_console, setup_logging, styled

USER_ERROR_EXIT = 2


class _UserErrorGroup(TyperGroup):
    """Turns a UserError raised anywhere below into one line on stderr and exit code 2.

    So does a usage error of a command's options (a value out of its range, an unknown option):
    they are parsed inside this group's ``invoke``.
    """

    def invoke(self, ctx):
        setup_logging()
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _one_line(str(exc))
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:  # a bad option value: one line, not click's usage box
            _usage_line(exc)
        except OSError as exc:  # a path that cannot be read or written: the user's to fix
            where = exc.filename if exc.filename is not None else "file system"
            _one_line(f"{quote(str(where))[1:-1]}: {exc.strerror or type(exc).__name__}")

    def make_context(self, info_name, args, parent=None, **extra):
        """The top level's own options (``ohem --bogus``) get the same one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            _usage_line(exc)


def _usage_line(exc: UsageError) -> None:
    _one_line(" ".join(exc.format_message().split()))


def _one_line(message: str) -> None:
    err_console.print(styled(("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(USER_ERROR_EXIT) from None  # typer 0.29 vendors click: its Exit


app = typer.Typer(
    cls=_UserErrorGroup,
    name="ohem",
    help=(
        "Does Online Hard Example Mining beat the older ways of choosing training RoIs, and "
        "what came after it?\n\n"
        "Trains one Fast R-CNN with pluggable RoI samplers: the paper's fixed, hnm and ohem; the "
        "later ohem-mmdet, libra, pisa, sampling-free and focal; or your own as a plugin "
        "(pkg.module:Class). Reads VOC or COCO data and reports VOC07 mAP and wall-clock side by "
        "side. Start with:  ohem compare --data synth"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
data_app = typer.Typer(
    cls=TyperGroup,
    help="Inspect, convert, generate, download and propose boxes for VOC or COCO data.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
