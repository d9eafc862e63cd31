"""Scripted drills: scenario files (topology, steps, expectations), one runner, reports."""
from lab.scenario.spec import Scenario, Step, load_scenario

__all__ = ["Scenario", "Step", "load_scenario"]
