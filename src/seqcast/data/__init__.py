"""The series to windows: reading, validation, scaling, seasons, baselines, features."""
