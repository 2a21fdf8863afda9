"""The search: Ray workers evaluate the controller's candidates on child tasks, results go to a durable
store, and the `nos` command line drives it all. The one package that brings the others together."""
