"""canary-guard sandbox: the simulated service, with fault injection (docs/sandbox.md).

``app.create_app(plan, api_key=None, seed=None)`` builds the aiohttp Application; ``faults``
holds the fault model, ``responses`` the realistic bodies, ``cli`` the command line.
"""
