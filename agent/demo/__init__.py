"""`sems demo`: a simulated station (`sems-sim`), the agent (`sems run`) against it over real
Modbus sockets and a pseudo-terminal, and a private Mosquitto when one is installed.

    scenario.py      which scenario, and the busy window of its day the demo starts at
    agent_config.py  the agent's TOML generated from the simulator's ready line
    children.py      the child processes: started in their own sessions, always stopped
    observe.py       what is shown: the simulator's truth, the agent's state, the uplink
    view.py          the live table
    runner.py        puts it together: run_demo(DemoOptions) -> summary dict
"""
