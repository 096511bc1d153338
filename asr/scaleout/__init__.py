"""Many files and many machines: the local resumable batch, and Ray (cluster, batch, serve).
The only place that imports ray."""
