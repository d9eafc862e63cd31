"""Guided lessons (`pglab learn`): scenario files with narration and questions, one per idea."""
