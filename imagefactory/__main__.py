import sys

from imagefactory.cli import main

sys.exit(main())
