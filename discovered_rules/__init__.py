"""Winners of searches, kept as records and as self-contained PyTorch optimizers. Needs only `dsl`.
(Export and loading are built in a later issue.)"""
