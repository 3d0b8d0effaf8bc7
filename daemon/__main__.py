"""`python -m daemon`: the int8wb language server over stdio."""
from daemon.server import main

main()
