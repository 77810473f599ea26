"""Sampling: which two models meet in a battle.

- policy.py: the weighted policy's pair probabilities and draw.
- adaptive.py: the adaptive policy's math (pair probabilities from battle counts only).
- plan.py: the adaptive plan as stored (SamplingPlan rows) and the draw a battle request makes.

The plan is computed from the leaderboard's battle counts by the leaderboard
(leaderboard/pipeline/sampling_plan.py), which writes the SamplingPlan rows this package reads:
the arena never imports the leaderboard.
"""
