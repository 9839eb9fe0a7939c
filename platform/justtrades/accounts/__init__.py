"""Users and login, admin stats, the max daily loss monitor, the Whop membership sync and per-entity debugging.

`component.init_app` wires the area into the app; `users.create_user` creates the first admin.
"""
