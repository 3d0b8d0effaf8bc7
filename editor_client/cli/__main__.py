"""`python -m int8wb.editor_client.cli`."""
import sys

from . import main

sys.exit(main())
