"""`python -m int8wb.daemon`: the int8wb language server over stdio."""
from int8wb.daemon.server import main

main()
