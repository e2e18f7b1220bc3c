"""``pwbus stack``: the whole bus on one machine without Docker, as supervised child processes.

Each component runs as ``python -m powerwall_bus <component>`` in a session of its own (so
a Ctrl-C in the terminal reaches only the stack, which forwards it). The work is split in
three: :mod:`~powerwall_bus.stack.plan` decides what runs with which command line and
environment, :mod:`~powerwall_bus.stack.supervise` runs it (start, restart, stop), and
:mod:`~powerwall_bus.stack.relay` / :mod:`~powerwall_bus.stack.ready` are the two ways the
supervisor looks at a child: its JSON log records, and an HTTPS GET.
"""
