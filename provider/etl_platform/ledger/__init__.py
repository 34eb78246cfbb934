"""The run ledger (etl_audit schema): its migrations and the rows the operators write."""
