"""``pwbus poller``: the only process that talks to the gateway."""
