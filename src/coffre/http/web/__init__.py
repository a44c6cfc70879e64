"""Server-rendered pages (French first): recipient link, first-run setup,
development mailbox. The full web interface builds on these."""
