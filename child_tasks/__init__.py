"""Child tasks: data, the NOS ConvNet, Wide ResNet and a small NMT model, trained with any rule to give
a candidate's reward. Imports only `dsl`. (Built in a later issue.)"""
