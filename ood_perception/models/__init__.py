"""PyTorch models with the official parameter names, checkpoint converters and scores."""
