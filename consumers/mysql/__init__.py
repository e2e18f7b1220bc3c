"""``pwbus mysql`` and ``pwbus db``: the history writer, its schema and its reports."""
