"""`python -m edge_embed.cli`: the same as the `edge-embed` command."""

from edge_embed.cli import main

main()
