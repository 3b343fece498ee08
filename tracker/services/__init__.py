"""Service functions: what the CLI, the web app and the scheduler call.

Each takes keyword-only arguments (`list_patients(engine=..., team=...)`) so call
sites read like sentences and tests call them without a shell or HTTP.
"""
