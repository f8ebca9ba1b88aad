"""The only code that talks to BigQuery: clients, schema model and manager, DDL, MERGE."""
