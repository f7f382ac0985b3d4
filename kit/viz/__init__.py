"""Pictures of the model (display only: nothing here changes the model)."""
