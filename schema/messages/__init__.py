"""JSON Schemas of the message contract; loaded by :mod:`shared.schemas`."""
