"""``pwbus stack``: its flags, its plan (the one settings object) and its run."""

from __future__ import annotations

import argparse
import textwrap

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.settings import LogSettings, Sources, load
from powerwall_bus.stack.plan import COMPONENTS, SIMULATOR, StackPlan, plan_stack


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="also run a simulated gateway on a free port and point the poller at it",
    )
    parser.add_argument(
        "--components",
        metavar="NAME,...",
        help="components to run, comma separated, from: "
        f"{', '.join(c.name for c in COMPONENTS)} (default: "
        f"{', '.join(c.name for c in COMPONENTS if c.default and c.name != SIMULATOR)}; "
        "--simulate adds simulate)",
    )


def _load(sources: Sources, args: argparse.Namespace) -> StackPlan:
    return plan_stack(
        args.components,
        simulate=args.simulate,
        sources=sources,
        log=load(LogSettings, "log", sources),
        config_file=args.config,
    )


def _run(plan: StackPlan) -> int:
    from powerwall_bus.stack.supervise import run_stack

    return run_stack(plan)


def _description() -> str:
    default = [c.name for c in COMPONENTS if c.default and c.name != SIMULATOR]
    named = [c.name for c in COMPONENTS if not c.default]
    text = (
        "Run the components as supervised child processes on this machine.\n\n"
        f"By default: {', '.join(default)} (the poller reads your gateway: PW_HOST and "
        "PW_PASSWORD). With --simulate, also a simulated gateway that the poller reads "
        "instead. The mysql writer starts only when a database answers at MYSQL_URL; "
        "otherwise the stack says so and runs the rest. Only when named with --components: "
        f"{', '.join(named)}.\n\n"
        "Then open the power-flow page: http://localhost:8675/ (PW_PORT)."
    )
    return "\n\n".join(textwrap.fill(paragraph, 78) for paragraph in text.split("\n\n"))


STACK = Command(
    name="stack",
    help="run the simulator, the poller and the consumers as supervised processes",
    description=_description(),
    add_arguments=_arguments,
    load=_load,
    run=_run,
    raw_help=True,
)
