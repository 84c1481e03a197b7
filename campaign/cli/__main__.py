"""``python -m campaign.cli``: the ``campaign`` command."""

from campaign.cli import app

app()
