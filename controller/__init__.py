"""The controller: an LSTM that emits rules token by token, trained with PPO, and the random-search
baseline it is always compared with. Imports only `dsl`. (Built in a later issue.)"""
