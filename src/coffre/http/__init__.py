"""HTTP entry points: JSON API, tus uploads, downloads, web pages. Thin:
parse, call one service, render."""
