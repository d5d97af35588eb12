"""The `hcp` command: one click group, its subcommands loaded on first use so
that `hcp proto decode` in a pipeline does not pay for the gateway's imports."""

import importlib

import click

# name -> (module, attribute, one-line help shown by `hcp --help`)
COMMANDS = {
    "bench": ("tools.bench_cli", "bench", "Benchmarks against the figures of docs/design.md §5."),
    "proto": ("tools.proto_cli", "proto", "Encode, decode and show frames of the wire protocol."),
    "demo": ("simulator.cli", "demo", "The whole system out of the box: gateway, broker, simulated evaluators."),
    "gateway": ("gateway.cli", "gateway", "Run the hall gateway; invitations, status and devices."),
    "sim": ("simulator.cli", "sim", "Simulated halls of real-firmware evaluators, with faults and invariants."),
    "tool": ("tools.tool_cli", "tool", "Technician tools: flash a board, pair it with a staff account, show it."),
    "report": ("tools.report_cli", "report", "Monthly statistics tables (评价数据统计表) from the gateway database."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attr, _ = entry
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        # Help text from the table, without importing every subcommand.
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hcp-evaluator", prog_name="hcp")
def main():
    """hcp: the 好差评 window evaluator system.

    Firmware for the five-button evaluator, the hall gateway that stores every
    rating durably and forwards it upstream, a simulator of whole halls, and
    the tools a technician uses to flash and pair devices.
    """
