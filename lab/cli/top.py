"""pglab top: placeholder until the dashboard lands."""
