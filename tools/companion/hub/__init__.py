"""The companion under JupyterHub: a hub service that alone holds the store.

Under JupyterHub a learner can run any code in their own server, so the
database URL and its password never reach it. The store belongs to the
``companion`` hub service (:mod:`companion.hub.service`), which serves each
user only their own data, identified by their hub token, and the facilitator
dashboard to the hub group ``companion-facilitators`` only. A learner's page
reaches it through :class:`companion.hub.client.RemoteStore`, which has the
same methods as the store, so the activities save one way wherever they run.
"""
