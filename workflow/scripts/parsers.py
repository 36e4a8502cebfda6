"""The argument parser of the job scripts: a bad argument is one line naming it, exit 2
(../shared/DESIGN.md, as densenet's CLI), without the usage block argparse prints first."""

import argparse


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))
