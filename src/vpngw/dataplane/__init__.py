"""The data plane: desired IPsec state, its strongSwan rendering, and the VICI boundary.

Modules, from pure to impure:

* ``desired``    frozen value objects in the API's vocabulary (no strongSwan words);
* ``proposals``  the one table from API algorithm names to strongSwan keywords;
* ``render``     ``ConnectionSpec`` -> the dicts VICI ``load-conn``/``load-shared`` take;
* ``vici_client`` a typed, decoded wrapper over the ``vici`` package (one charon);
* ``lab``        namespaces and per-namespace charons for tests and experiments.
"""
