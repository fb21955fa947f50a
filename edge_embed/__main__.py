"""``python -m edge_embed`` runs the command-line tool."""

from edge_embed.cli import main

main()
