-- A tenant's own database: its users, roles and settings.
CREATE TABLE IF NOT EXISTS roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id          TEXT PRIMARY KEY,                 -- the same id as the control-plane user
    email       TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL REFERENCES roles (name)
);
CREATE TABLE IF NOT EXISTS settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
