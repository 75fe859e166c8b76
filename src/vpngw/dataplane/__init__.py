"""The data plane: strongSwan charons driven from the store, one subpackage per job.

From the bottom up (a module imports only from the layers below it;
``tests/dataplane/test_layers.py`` checks it, docs/architecture.md draws it):

``errors``     the error vocabulary (PermanentError, TemporaryError, BackendBusy).
``system``     the operating system: network namespaces, links, routes, processes.
``spec``       what charon must run: the desired state read from the store (pure but
               for the read) and its rendering into VICI messages.
``backends.base``  the backend interface: where a gateway's network comes from.
``charon``     the daemon itself: starting it, its VICI client and event stream.
``observe``    what comes back: SA status, diagnosis from logs, health probes.
``nodes``      which node runs which gateway: placement and the lease keeper.
``backends.lab``, ``backends.host``  the two backends (namespaces on a lab WAN; a real
               host's uplink); the core never imports them, the CLI picks one.
``core``       the reconciler and the per-gateway agent that tie it together.
"""
