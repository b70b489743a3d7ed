"""Reads behind the dashboards, by page: ``customer`` (the end user's dashboard), ``operator``
(the operator dashboard, its alerts and ``/metrics``) and ``economics`` (costs, revenue, margin).
Nothing here writes; revenue is decoded by the apps that took the money (billing, credits).
"""
