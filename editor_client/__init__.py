"""Front ends: the `int8wb` command line (and, beside it, the editor extension)."""
