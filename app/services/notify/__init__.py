"""Telling others: grant webhooks (email and alert delivery arrive with operations)."""
