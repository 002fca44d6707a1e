"""What runs on a board (`board.agent`) and the boards edgeopt can start itself (`board.local`).

Keep this file empty of imports: it is copied to boards together with `board/agent`.
"""
