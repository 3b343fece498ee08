"""Figures and reports for surgeons: trend figures (matplotlib), patient reports and
the cohort board (Jinja2 to HTML, PDF through WeasyPrint).

Everything here reads the engine's assessment; nothing recomputes a stage or a
readiness verdict.
"""
