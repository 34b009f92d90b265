//! Placement files: TOML rules (being written).
