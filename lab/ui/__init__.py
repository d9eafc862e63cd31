"""pglab's live dashboard (`pglab top`): a Textual app over the `Lab` API. Textual is an optional
extra (pglab[ui]); nothing below the CLI imports this package."""
