"""Reads behind the dashboards, by page: ``customer`` (a workspace's dashboard), ``operator``
(the operator dashboard, its alerts and ``/metrics``) and ``economics`` (costs, revenue, margin).
Nothing here writes; revenue is decoded by the apps that took the money (billing, credits).
"""
