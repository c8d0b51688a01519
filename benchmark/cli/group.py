"""The ``musicbench`` click group; the commands are added by the modules of this package."""

from __future__ import annotations

import click


class MusicbenchGroup(click.Group):
    """The group every command runs under; it owns the exit statuses that are not a command's own.

    - A usage error (unknown option, bad option value, missing option) is one line, exit status 2.
    - Ctrl-C exits 130 and SIGTERM 143 (128 + the signal, as a shell reports it), after the run in progress was
      ended KILLED; click's own handling would exit 1, the status of "an encoder failed".
    """

    def invoke(self, ctx: click.Context):
        from ..interrupts import exit_status, handle_sigterm

        handle_sigterm()
        try:
            try:
                return super().invoke(ctx)
            except click.UsageError as error:
                command = ctx.invoked_subcommand or ""
                hint = f"see 'musicbench {command} --help'".replace("  ", " ")
                raise OneLineUsageError(f"{error.format_message()} ({hint})") from None
            except KeyboardInterrupt as error:
                status = exit_status(error)
                click.echo(
                    f"\nInterrupted ({'SIGTERM' if status == 143 else 'Ctrl-C'}): exit status {status}", err=True
                )
                raise click.exceptions.Exit(status) from None
        except BaseException as error:
            _record_refusal(error)
            raise


def _record_refusal(error: BaseException) -> None:
    """Under ``mlflow run``, a command that stops with an error before its run started (MLflow's run is still in
    ``$MLFLOW_RUN_ID``) leaves the reason and the encoder on that run, which MLflow then marks FAILED."""
    import os
    import sys

    if not os.environ.get("MLFLOW_RUN_ID"):
        return
    if isinstance(error, click.exceptions.Exit) and error.exit_code == 0:
        return
    if isinstance(error, SystemExit) and error.code in (0, None):
        return
    if isinstance(error, click.ClickException):
        reason = error.format_message()
    elif isinstance(error, (click.exceptions.Exit, SystemExit)):
        reason = f"exit status {getattr(error, 'exit_code', getattr(error, 'code', ''))}"
    else:
        reason = f"{type(error).__name__}: {error}"
    from ..runs import ENCODER_TAG
    from ..tracking import MLFLOW_RUN_NAME, record_refusal

    args, tags = sys.argv[1:], {}
    command = args[0] if args else ""
    for flag in ("--encoder", "-e", "--encoders"):
        for i, arg in enumerate(args):
            value = args[i + 1] if arg == flag and i + 1 < len(args) else None
            if arg.startswith(flag + "="):
                value = arg.partition("=")[2]
            if value:
                tags[ENCODER_TAG if flag != "--encoders" else "musicbench.suite.encoders"] = value
                tags[MLFLOW_RUN_NAME] = value if flag != "--encoders" else f"{command} {value}"
    record_refusal(reason, tags)


class OneLineUsageError(click.ClickException):
    """A usage error shown as one line (``Error: …``), exit status 2."""

    exit_code = 2


@click.group(cls=MusicbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="musicbench")
def main() -> None:
    """musicbench: which audio embedding finds the right song? One MLflow run per encoder.

    Exit status: 0 done; 1 a run or an encoder failed (or nothing to compare); 2 refused before any work (bad
    option, dataset, ground truth, weights, device or tracking store); 3 regress found a regression; 130 Ctrl-C;
    143 SIGTERM.
    """
    from encoders.runtime import set_offline_defaults

    set_offline_defaults()
    _freeze_at_exit()


_FREEZING: list[bool] = []


def _freeze_at_exit() -> None:
    """At exit, move every object to the garbage collector's permanent generation before the interpreter tears the
    modules down: its last collections then skip the ~300k objects MLflow, pandas and friends leave (measured:
    exit 1.5-4 s → 0.1-0.2 s on 2 busy cores). Runs after everything was written and closed; objects are still
    released by reference counting, atexit handlers still run."""
    if not _FREEZING:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _FREEZING.append(True)
