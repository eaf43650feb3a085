"""JSON Schemas shipped with the package: the config file's, checked before anything runs."""
