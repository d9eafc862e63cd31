"""Reading from followers: routing policies, anomaly checkers, and the consistency drills."""
