"""Host-side report: cell directories -> tidy tables (aggregate) -> one HTML page (render).

Reads only cell directories, the study manifest and report/references/; never imports densenet/
(the cell directory is the contract between the two, see ../shared/DESIGN.md).
"""
