"""What every display shows: one pure state fed from the bus, one pure text formatter.

The console, the GUI and the LED display are thin shells around :mod:`.state` (what is
known and how fresh it is) and :mod:`.format` (how numbers read), so they agree.
"""
