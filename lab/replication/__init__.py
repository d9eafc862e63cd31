"""Replication itself: the sync policy, lag recording and plots, the price of commit, follower drills."""
